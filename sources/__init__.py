"""Readers of the climate products, reduced to the six bands in each product's own raw schema.

Plain Python: no Dagster import (tests call these readers directly). `catalog` is the product's
vocabulary (bands, months, raw and canonical schemas), `base` the one interface per kind of
source, `validation` the checks every source's frames pass before anything lands, and one
module per source beside them (`demo` is the offline default).
"""
