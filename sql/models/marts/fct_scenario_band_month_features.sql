-- Scenarios: one row per RCP, band and month (historical run spliced before 2006), with the
-- history mart's feature columns and no targets. Layer soil water w_0..w_3 is the model's
-- total column water split by the reanalysis' mean layer shares for the band and calendar
-- month (the expectation of the Dirichlet split that the features step samples).
with scenarios as (
    select * from {{ ref('int_cmip5_scenarios_spliced') }}
),

shares as (
    select * from {{ ref('int_era5_land_soil_water_shares') }}
),

static as (
    select * from {{ ref('int_band_static_features_pivoted') }}
)

select
    scenarios.scenario,
    scenarios.band,
    scenarios.month,
    scenarios.model,
    scenarios.source_experiment,
    {{ time_features('scenarios.month') }},
    scenarios.t_air,
    scenarios.t_surface,
    scenarios.p_total,
    scenarios.p_snow,
    scenarios.r_thermal,
    scenarios.r_solar,
    scenarios.q_latent,
    scenarios.q_sensible,
    -- kg m-2 x share / (1000 kg m-3 x layer thickness m) -> m3 m-3, capped at saturation
    {% for layer in range(4) -%}
    least(
        scenarios.soil_water_total_kg_m2 * shares.share_{{ layer }}_mean / (1000 * {{ layer_thickness_m(layer) }}),
        1.0
    ) as w_{{ layer }},
    {% endfor -%}
    scenarios.soil_water_total_kg_m2,
    static.* exclude (band)  -- noqa: RF02
from scenarios
inner join shares
    on scenarios.band = shares.band and month(scenarios.month) = shares.calendar_month
inner join static on scenarios.band = static.band
