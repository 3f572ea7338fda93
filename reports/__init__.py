"""pruneopt.reports — optimality-gap tables, plots, Markdown and HTML reports."""
