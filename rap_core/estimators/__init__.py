"""Estimators as plug-ins: the built-in ones register themselves here, in method order."""

from rap.rap_core.estimators import ace, cde, coverage, drm, pass_band, random_subset  # noqa: F401
from rap.rap_core.estimators.base import (FILTERS, METHODS, REBALANCERS, Context, Filter,
                                      Method, Plan, Rebalancer, plan, register)

register(Method("rap", ("cde", "ace"), "drm", description="RAP: CDE -> ACE -> DRM (the paper)"))

__all__ = ["FILTERS", "METHODS", "REBALANCERS", "Context", "Filter", "Method", "Plan",
           "Rebalancer", "plan", "register"]
