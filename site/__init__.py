"""The site's hand-written sources (pages, styles, scripts, mkdocs.yml), shipped as package data."""
