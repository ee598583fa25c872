"""Load generation for cutover rehearsals: Locust users, a runner that records every request, reports."""
