"""The site, from data/ alone: chart specs (charts) and page text (pages), both pure; the build
(build) writes build/docs, the downloads and, through mkdocs, public/."""
