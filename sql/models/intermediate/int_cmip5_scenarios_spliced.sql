-- Each RCP as one continuous series: the historical run up to 2005-12 followed by the
-- scenario from 2006-01, so every scenario overlaps the reanalysis from 2001. A source
-- without a historical run (published tables from 2021) gives the RCP alone.
with cmip5 as (
    select * from {{ ref('int_cmip5_column_water_completed') }}
),

scenarios as (
    select distinct experiment as scenario
    from cmip5
    where experiment like 'rcp%'
),

spliced as (
    select
        scenarios.scenario,
        cmip5.* exclude (experiment),  -- noqa: RF02
        'historical' as source_experiment
    from scenarios
    inner join cmip5 on cmip5.experiment = 'historical'
    union all
    select
        experiment as scenario,
        * exclude (experiment),
        experiment as source_experiment
    from cmip5
    where experiment like 'rcp%'
)

select * from spliced
