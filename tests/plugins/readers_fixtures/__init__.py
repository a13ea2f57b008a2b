"""Small writers that generate Micromed ``.TRC`` and Nicolet ``.e`` fixtures at test time.

Neither format has public sample files; these writers produce files following the layouts that
Neo / micromed-io (TRC) and the ieeg-portal MATLAB reader / Neo fork (``.e``) read.
"""
