#!/bin/sh
# Stand-in for the official redis image's entrypoint: the official image builds Redis with
# protected mode off ("unnecessary in the context of Docker": other containers are its
# clients) and drops root to the redis user. Debian's redis-server keeps protected mode on,
# which refuses every non-loopback client when no password is set, so it is turned off here
# unless the command line sets it.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
  if [ "$(id -u)" = 0 ]; then exec setpriv --reuid=redis --regid=redis --init-groups "$@"; fi
fi
exec "$@"
