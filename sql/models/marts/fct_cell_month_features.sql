-- Grid mode's cell mart: the history mart's rows (one per cell and month, every column) with the
-- cell's `tile`, written as Parquet partitioned by tile and year (<lake>/marts/
-- fct_cell_month_features/tile=<key>/year=<yyyy>/) and seen in the warehouse as a view over those
-- files (materialization `lake_parquet`, macros/lake.sql: written to a temporary folder, renamed
-- into place).
-- Grid mode is read from the landed spatial units (macros/units.sql: grid_mode); elsewhere (the
-- band demo, basins) the mart has its columns and no row, and writes no file.
-- A monthly partition run rewrites only its window's years (every tile's folder of those years);
-- a run without a window, or the first, writes every folder.
-- depends_on: {{ source('spatial_units', 'spatial_units') }}
{{
    config(
        materialized='lake_parquet',
        partition_by=['tile', 'year'],
        order_by='unit, month',
        tags=['monthly'],
    )
}}

{%- set grid = grid_mode() %}

with history as (
    select * from {{ ref('fct_band_month_features') }}
    where {{ lake_window_years('month') }}
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
