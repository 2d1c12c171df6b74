"""`make demo` and `make recover`: run the assembled graph from a terminal, and clean up after
runs whose process died. Nothing else in the project imports this package.
"""
