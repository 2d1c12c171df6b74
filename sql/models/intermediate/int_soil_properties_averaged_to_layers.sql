-- OpenLandMap profiles (points at 0, 10, 30, 60, 100, 200 cm) averaged onto the four
-- ERA5-Land layers: the profile is linear between points and constant below 200 cm, and a
-- layer's value is the depth-weighted mean of the profile over the layer.
with points as (
    select * from {{ ref('stg_openlandmap__soil') }}
),

segments as (
    select
        band,
        property,
        unit,
        depth_cm as top_cm,
        coalesce(lead(depth_cm) over w, 1000) as bottom_cm,
        value as top_value,
        coalesce(lead(value) over w, value) as bottom_value
    from points
    window w as (partition by band, property order by depth_cm)
),

layers as (
    {% for top, bottom in var('soil_layers_m') -%}
    select
        {{ loop.index0 }} as layer,
        {{ (top * 100) | round(3) }} as top_cm,
        {{ (bottom * 100) | round(3) }} as bottom_cm
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

layer_overlaps as (
    select
        s.band,
        s.property,
        s.unit,
        l.layer,
        greatest(l.top_cm, s.top_cm) as lo,
        least(l.bottom_cm, s.bottom_cm) as hi,
        s.top_cm,
        s.bottom_cm,
        s.top_value,
        s.bottom_value
    from segments as s
    inner join layers as l on s.top_cm < l.bottom_cm and s.bottom_cm > l.top_cm
),

pieces as (
    select
        band,
        property,
        unit,
        layer,
        hi - lo as thickness_cm,
        -- mean of a linear profile over [lo, hi] is its value at the midpoint
        top_value + (bottom_value - top_value) * ((lo + hi) / 2.0 - top_cm) / (bottom_cm - top_cm) as mean_value
    from layer_overlaps
)

select
    band,
    property,
    unit,
    layer,
    sum(mean_value * thickness_cm) / sum(thickness_cm) as value
from pieces
group by band, property, unit, layer
