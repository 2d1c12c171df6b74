{#
  Fails on every month (within `group_by`) that does not hold exactly `n_bands` bands. With
  `in_run_window`, a partition run (vars min_month, max_month) also fails on every month of
  its window that holds no row at all: a band-month missing from the source is caught there.
#}
{% test bands_per_month(model, group_by=['month'], n_bands=6, in_run_window=false) %}
{%- set start, end = run_window() %}
{%- if in_run_window and start != '' %}
with window_months as (
    select cast(month_start as date) as month
    from range(
        cast('{{ start }}' as date), cast('{{ end }}' as date), interval 1 month
    ) as months (month_start)
)

select
    window_months.month,
    count(distinct model_rows.band) as n_bands,
    string_agg(distinct cast(model_rows.band as varchar), ', ') as bands
from window_months
left join {{ model }} as model_rows on window_months.month = model_rows.month
group by window_months.month
having count(distinct model_rows.band) != {{ n_bands }}
{%- else %}
select
    {{ group_by | join(', ') }},
    count(distinct band) as n_bands,
    string_agg(distinct cast(band as varchar), ', ') as bands
from {{ model }}
group by {{ group_by | join(', ') }}
having count(distinct band) != {{ n_bands }}
{%- endif %}
{% endtest %}
