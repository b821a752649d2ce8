"""Reports drawn for people (the spend chart); platform-free, used by every front end."""
