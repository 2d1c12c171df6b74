-- Grid mode's cell mart: the history mart's rows (one per cell and month, every column) with the
-- cell's `tile`, written as Parquet partitioned by tile (<lake>/marts/fct_cell_month_features/
-- tile=<key>/) and seen in the warehouse as a view over those files (materialization
-- `lake_parquet`, macros/lake.sql: written to a temporary folder, renamed into place).
-- Grid mode is read from the landed spatial units (macros/units.sql: grid_mode); elsewhere (the
-- band demo, basins) the mart has its columns and no row, and writes no file.
-- Rewritten whole by every run: a monthly partition run rewrites every tile's file.
-- depends_on: {{ source('spatial_units', 'spatial_units') }}
{{
    config(
        materialized='lake_parquet',
        partition_column='tile',
        order_by='unit, month',
        tags=['monthly'],
    )
}}

{%- set grid = grid_mode() %}

with history as (
    select * from {{ ref('fct_band_month_features') }}
),

cells as (
    {%- if grid %}
    select
        cast(unit as bigint) as unit,
        cast(tile as varchar) as tile
    from {{ landed_spatial_units() }}
    {%- else %}
    select
        cast(null as bigint) as unit,
        cast(null as varchar) as tile
    where false
    {%- endif %}
)

select
    history.*,
    cells.tile
from history
inner join cells on history.unit = cells.unit
