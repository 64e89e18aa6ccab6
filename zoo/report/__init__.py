"""The site, from data/ alone: chart specs (charts), page text (pages) and time held against the
operation count (timing), all pure; the build (build) writes build/docs, the downloads and,
through mkdocs, public/."""
