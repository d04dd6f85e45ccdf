"""sppnet.jobs: whole runs that a command starts - the README's main job
(:mod:`sppnet.jobs.demo`). The layer above :mod:`sppnet.inference`, below :mod:`sppnet.cli`."""
