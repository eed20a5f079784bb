"""A trained detector behind HTTP: FastAPI endpoints, a web page and Grad-CAM overlays."""
