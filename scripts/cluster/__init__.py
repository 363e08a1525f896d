"""`make cluster`: the IVR as several processes on real engines (Kamailio, HAProxy, Redis, PostgreSQL) on loopback."""
