"""The assembly of the code location: jobs, sensors and the schedule, automation conditions.

`dagster_project.definitions` puts them together with the assets and checks; nothing in the
infrastructure or the assets imports this package.
"""
