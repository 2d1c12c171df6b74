-- Share of the 0-2.89 m column's water held by each ERA5-Land layer, per band and
-- calendar month: mean and variance over the years. The one place these moments are
-- computed: the scenario mart splits column water by the means, and the features step fits
-- its Dirichlet layer shares to means and variances (ml.soil_water.fit_layer_shares).
-- Scenarios are per band: a band's shares are those of the units whose nearest band it is
-- (the band itself by default; its basins' years pooled otherwise). A band no unit is near
-- has no row.
with era5 as (
    select * from {{ ref('stg_era5_land__monthly') }}
),

masses as (
    -- kg m-2 of water per layer: m3 m-3 x thickness (m) x 1000 kg m-3
    select
        {% for layer in range(4) -%}
        w_{{ layer }} * {{ layer_thickness_m(layer) }} * 1000 as mass_{{ layer }},
        {% endfor -%}
        nearest_band as band,
        month(month) as calendar_month,
        year(month) as year
    from era5
),

shares as (
    select
        band,
        calendar_month,
        year,
        mass_0 / (mass_0 + mass_1 + mass_2 + mass_3) as share_0,
        mass_1 / (mass_0 + mass_1 + mass_2 + mass_3) as share_1,
        mass_2 / (mass_0 + mass_1 + mass_2 + mass_3) as share_2,
        mass_3 / (mass_0 + mass_1 + mass_2 + mass_3) as share_3
    from masses
)

select
    band,
    calendar_month,
    {% for layer in range(4) -%}
    avg(share_{{ layer }}) as share_{{ layer }}_mean,
    var_samp(share_{{ layer }}) as share_{{ layer }}_variance,
    {% endfor -%}
    count(distinct year) as n_years
from shares
group by band, calendar_month
