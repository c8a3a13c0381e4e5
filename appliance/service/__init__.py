"""The box's service machinery: parts and their supervisor, the sd_notify protocol, and the
manager process's parts (API listener, cloud link, embedded cabinet). The composition root
is :mod:`appliance.daemon`."""
