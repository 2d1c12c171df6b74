-- ERA5-Land to canonical names and units, one row per spatial unit and calendar month. Rows
-- are aggregated to calendar months so a daily product lands the same way: means for states,
-- sums for accumulations (`*_sum`).
-- Units: the raw key is `unit` where the landed files carry it (a source of basins or cells),
-- else `band` (bands are units 0-5). `band` is the raw band for bands, else the unit's band from
-- the units table (null outside the six bands); `nearest_band` says which band's per-band data
-- (static extracts, scenarios) stands for the unit.
-- A variable the source lacks is null in raw and stays null here (absent); the optional bands
-- (swe, net radiation, ...) are null where the landed files do not carry them.
-- A raw row delivered twice would be summed into its month (doubling precipitation and
-- radiation): the model refuses it instead, naming unit, month, date and files
-- (`unique_raw_key` is the same rule as a test). The raw key is the unit, month and the
-- product's own time stamp `date` (the day of a daily product, the month's first day of a
-- monthly one) where the landed files carry it.
-- Tagged `monthly`: in Dagster it is partitioned by month with the history mart, so a landed
-- month flows through both in one run (the view itself covers every month). A partition run
-- also makes `stg_era5_land__monthly__run_window`, this SQL over the window's raw files only,
-- which the history mart and the windowed tests read (macros/staging.sql: raw_staging_view).
-- depends_on: {{ source('spatial_units', 'spatial_units') }}
{{ config(tags=['monthly'], materialized='raw_staging_view', raw_source=['era5_land', 'era5_land_monthly']) }}
{%- set landed = landed_columns('era5_land', 'era5_land_monthly') %}
{%- set unit_key = 'unit' if 'unit' in landed else 'band' %}
{%- set raw_key = raw_key_columns(
    'era5_land', 'era5_land_monthly', ['band', 'month'], ['date'], {'band': 'unit'}, landed
) %}

with source as (
    select * from {{ source('era5_land', 'era5_land_monthly') }}
),

duplicates as (
    {{ raw_key_duplicates('source', raw_key) }}
),

units as (
    {{ spatial_units() }}
),

renamed as (
    select
        cast({{ unit_key }} as bigint) as unit,
        cast(date_trunc('month', month) as date) as month,
        count(*) as n_source_rows,
        avg(temperature_2m) - 273.15 as t_air,
        avg(skin_temperature) - 273.15 as t_surface,
        sum(total_precipitation_sum) as p_total,
        sum(snowfall_sum) as p_snow,
        sum(surface_thermal_radiation_downwards_sum) as r_thermal,
        sum(surface_solar_radiation_downwards_sum) as r_solar,
        -- ECMWF fluxes are positive downwards: the canonical convention, kept as is.
        sum(surface_latent_heat_flux_sum) as q_latent,
        sum(surface_sensible_heat_flux_sum) as q_sensible,
        avg(volumetric_soil_water_layer_1) as w_0,
        avg(volumetric_soil_water_layer_2) as w_1,
        avg(volumetric_soil_water_layer_3) as w_2,
        avg(volumetric_soil_water_layer_4) as w_3,
        {{ if_landed(landed, 'snow_depth_water_equivalent', 'avg(snow_depth_water_equivalent)') }} as swe,
        {{ if_landed(landed, 'surface_net_solar_radiation_sum', 'sum(surface_net_solar_radiation_sum)') }}
            as r_net_solar,
        {{ if_landed(landed, 'surface_net_thermal_radiation_sum', 'sum(surface_net_thermal_radiation_sum)') }}
            as r_net_thermal,
        {{ if_landed(landed, 'dewpoint_temperature_2m', 'avg(dewpoint_temperature_2m) - 273.15') }} as t_dew,
        {{ if_landed(landed, 'surface_pressure', 'avg(surface_pressure)') }} as surface_pressure,
        {{ if_landed(landed, 'u_component_of_wind_10m', 'avg(u_component_of_wind_10m)') }} as wind_u,
        {{ if_landed(landed, 'v_component_of_wind_10m', 'avg(v_component_of_wind_10m)') }} as wind_v,
        {{ if_landed(landed, 'surface_runoff_sum', 'sum(surface_runoff_sum)') }} as runoff_surface,
        {{ if_landed(landed, 'sub_surface_runoff_sum', 'sum(sub_surface_runoff_sum)') }} as runoff_subsurface,
        avg(soil_temperature_level_1) - 273.15 as t_soil_0,
        avg(soil_temperature_level_2) - 273.15 as t_soil_1,
        avg(soil_temperature_level_3) - 273.15 as t_soil_2,
        avg(soil_temperature_level_4) - 273.15 as t_soil_3
    from source
    group by 1, 2
)

select
    renamed.unit,
    {{ 'cast(renamed.unit as integer)' if unit_key == 'band' else 'units.band' }} as band,
    units.nearest_band,
    renamed.* exclude (unit)  -- noqa: RF02
from renamed
left join units on renamed.unit = units.unit
where {{ refuse_raw_duplicates('duplicates', raw_key, 'stg_era5_land__monthly') }}
