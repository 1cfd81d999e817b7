"""The one-command demo (``edgefleet demo``): broker, server and a simulated fleet on one host.

:mod:`.preflight` checks the host before anything starts, so a missing
package or a busy port is reported all at once with its fix instead of as
the first failure half-way through start-up.
"""
