"""Activity: what each grant was used for, read from the clouds' audit logs.

``collect_activity`` (``reconciler.activity.usecase``) is the use case the ``activity``
command and ``audit --activity`` call; each log source sits behind ``LogSource``
(``reconciler.activity.sources``): Cloud Logging ``entries.list``, CloudTrail
``LookupEvents``, and the organisation-wide engines (CloudTrail Lake).
"""
