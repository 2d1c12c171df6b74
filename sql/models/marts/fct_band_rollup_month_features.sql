-- Grid mode's bands: the cell mart rolled up to the six latitude bands, one row per band and
-- month, each variable the area-weighted mean of the band's cells (weights: the fractional
-- band cover x cos latitude of each cell, landed with the cells as band_weight_0..5 by
-- sources.grid; a cell cut by a band edge weighs in both bands). The same columns as the
-- history mart on the band demo (`unit` = `band` = `nearest_band`); the static features are
-- the band's own. A variable missing in any cell of a band-month is null there (a hole is the
-- cell mart's tests' to report, not to be averaged away); absent everywhere stays null.
-- Outside grid mode it has no row. Incremental by month window, like the history mart.
-- depends_on: {{ source('spatial_units', 'spatial_units') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='replace_window',
        window_column='month',
        tags=['monthly'],
    )
}}

{%- set averaged = [
    't_air', 't_surface', 'p_total', 'p_snow', 'r_thermal', 'r_solar', 'q_latent', 'q_sensible',
    'w_0', 'w_1', 'w_2', 'w_3', 'swe', 'r_net_solar', 'r_net_thermal', 't_dew', 'surface_pressure',
    'wind_u', 'wind_v', 'runoff_surface', 'runoff_subsurface', 't_soil_0', 't_soil_1', 't_soil_2', 't_soil_3',
] %}
{%- set grid = grid_mode() %}

with weights as (
    {%- if grid %}
    {{ cell_band_weights() }}
    {%- else %}
    select
        cast(null as bigint) as unit,
        cast(null as integer) as band,
        cast(null as double) as weight
    where false
    {%- endif %}
),

cells as (
    select * from {{ ref('fct_cell_month_features') }}
    where {{ in_month_window('month') }}
),

rolled as (
    select
        {% for column in averaged -%}
        {{ weighted_mean('cells.' ~ column, 'weights.weight') }} as {{ column }},
        {% endfor -%}
        weights.band,
        cells.month
    from cells
    inner join weights on cells.unit = weights.unit
    group by weights.band, cells.month
),

static as (
    select * from {{ ref('int_band_static_features_pivoted') }}
)

select
    cast(rolled.band as bigint) as unit,
    rolled.band,
    rolled.band as nearest_band,
    rolled.month,
    {{ time_features('rolled.month') }},
    {%- for column in averaged if not column.startswith('t_soil') %}
    rolled.{{ column }},
    {%- endfor %}
    static.* exclude (band),  -- noqa: RF02
    rolled.t_soil_0,
    rolled.t_soil_1,
    rolled.t_soil_2,
    rolled.t_soil_3
from rolled
inner join static on rolled.band = static.band
