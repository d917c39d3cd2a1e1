"""Pages of the workbench, one script each (run by st.navigation)."""
