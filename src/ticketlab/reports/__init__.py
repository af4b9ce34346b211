"""Floor 7, reports: plots, tables and the HTML report, read from the results store.
"""
