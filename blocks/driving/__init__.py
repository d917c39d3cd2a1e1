"""driving blocks (see the driving issue); the package exists so the catalog's layout is fixed."""
