{#
  The reanalysis' spatial units as a query, one row per unit: the table the raw asset
  `spatial_units` landed, or the six latitude bands (var('bands')) where none has landed (a lake
  from before spatial units, a hand-made fixture). Columns: unit, kind, name, latitude,
  longitude, area_km2, band (null outside the bands), nearest_band, series_group. Staging, the
  unit tests and dim_spatial_units read it here, so a partition run needs no other model built.
  The source is found in the graph, not through source(): a test reading the units must not
  depend on it, or dbt would run the test with a build of the source's other children (the
  scenario mart's test in a history-only build). A model reading them states its lineage with
  `-- depends_on: {{ source('spatial_units', 'spatial_units') }}`.
#}
{% macro spatial_units() -%}
    {%- set locations = [] -%}
    {%- if execute -%}
        {%- for node in graph.sources.values() if node.source_name == 'spatial_units' -%}
            {%- do locations.append((node.meta.external_location or node.source_meta.external_location)
                | replace('{name}', node.name)) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set relation = locations[0] if locations else none -%}
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
    {% if relation is not none and raw_files_landed(relation) -%}
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
