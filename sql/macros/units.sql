{#
  The reanalysis' spatial units as a query, one row per unit: the table the raw asset
  `spatial_units` landed, or the six latitude bands (var('bands')) where none has landed (a lake
  from before spatial units, a hand-made fixture). Columns: unit, kind, name, latitude,
  longitude, area_km2, band (null outside the bands), nearest_band, series_group. Staging, the
  unit tests and dim_spatial_units read it here, so a partition run needs no other model built.
#}
{% macro spatial_units() -%}
    {%- set relation = source('spatial_units', 'spatial_units') -%}
    {%- set west, east = var('band_longitudes') -%}
    select
        cast(unit as bigint) as unit,
        cast(kind as varchar) as kind,
        cast(name as varchar) as name,
        cast(latitude as double) as latitude,
        cast(longitude as double) as longitude,
        cast(area_km2 as double) as area_km2,
        cast(band as integer) as band,
        cast(nearest_band as integer) as nearest_band,
        cast(series_group as bigint) as series_group
    {% if raw_files_landed(relation) -%}
    from {{ relation }}
    {%- else -%}
    from (
        values
        {%- for south, north, area_km2 in var('bands') %}
        ({{ loop.index0 }}, 'band', 'band {{ loop.index0 }}', {{ (south + north) / 2 }}, {{ (west + east) / 2 }},
            {{ area_km2 }}, {{ loop.index0 }}, {{ loop.index0 }}, {{ loop.index0 }}){{ ',' if not loop.last }}
        {%- endfor %}
    ) as bands (unit, kind, name, latitude, longitude, area_km2, band, nearest_band, series_group)
    {%- endif %}
{%- endmacro %}
