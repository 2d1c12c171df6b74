-- History: one row per spatial unit and month (a band by default; a basin or cell where the
-- reanalysis' units are those) with dynamic, static and time features and the four
-- soil-temperature targets. The name stays (users' queries name it); the key is (unit, month).
-- Static features are per band: a unit takes those of its nearest band. Incremental: a
-- monthly partition run replaces EVERY row of its window (macros/incremental.sql), so a row
-- gone from the source is gone from the mart.
{{
    config(
        materialized='incremental',
        incremental_strategy='replace_window',
        window_column='month',
        tags=['monthly'],
    )
}}

with era5 as (
    {% if is_incremental() %}
    -- the run's window of staging, read from the window's raw files only (macros/staging.sql)
    select * from {{ staged_in_run_window(ref('stg_era5_land__monthly')) }}
    where {{ in_month_window('month') }}
    {% else %}
    select * from {{ ref('stg_era5_land__monthly') }}
    {% endif %}
),

static as (
    select * from {{ ref('int_band_static_features_pivoted') }}
)

select
    era5.unit,
    era5.band,
    era5.nearest_band,
    era5.month,
    {{ time_features('era5.month') }},
    era5.t_air,
    era5.t_surface,
    era5.p_total,
    era5.p_snow,
    era5.r_thermal,
    era5.r_solar,
    era5.q_latent,
    era5.q_sensible,
    era5.w_0,
    era5.w_1,
    era5.w_2,
    era5.w_3,
    era5.swe,
    era5.r_net_solar,
    era5.r_net_thermal,
    era5.t_dew,
    era5.surface_pressure,
    era5.wind_u,
    era5.wind_v,
    era5.runoff_surface,
    era5.runoff_subsurface,
    static.* exclude (band),  -- noqa: RF02
    era5.t_soil_0,
    era5.t_soil_1,
    era5.t_soil_2,
    era5.t_soil_3
from era5
inner join static on era5.nearest_band = static.band
