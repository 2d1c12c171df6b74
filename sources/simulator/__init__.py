"""The demo's physical simulator: weather, land surface and snowpack, soil column, pathways.

Plain numpy arrays in and out, no source class: `sources.demo` turns them into raw frames. It
shares no code with `ml/thermal_core.py` on purpose: the truth must not share the model it judges.
"""
