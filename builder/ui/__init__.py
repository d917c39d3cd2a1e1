"""The Streamlit workbench (`aib ui`)."""
