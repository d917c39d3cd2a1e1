"""speech blocks (see the speech issue); the package exists so the catalog's layout is fixed."""
