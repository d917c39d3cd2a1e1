"""vision blocks (see the vision issue); the package exists so the catalog's layout is fixed."""
