#!/usr/bin/env sh
# Nothing to do for the deploy check, which starts every function once before it goes live.
[ -z "$FNIX_DEPLOY_CHECK" ] || exit 0
# With "network": true: which interfaces there are, and whether the gateway (its port in QUERY_STRING)
# and the host's Podman and Nix sockets can be reached from here.
port="$QUERY_STRING"
echo "interfaces: $(ls /sys/class/net | tr '\n' ' ')"
gateway_ip=$(ip route 2>/dev/null | awk '/default/ {print $3}')
echo "default gateway: ${gateway_ip:-none}"
for host in 127.0.0.1 "$gateway_ip"; do
  [ -n "$host" ] || continue
  if wget -q -T 2 -O /dev/null "http://$host:$port/healthz" 2>/dev/null; then echo "gateway at $host:$port reachable"; else echo "gateway at $host:$port unreachable"; fi
done
for socket in /run/podman/podman.sock /var/run/podman/podman.sock /nix/var/nix/daemon-socket/socket /run/fnix/agent.sock; do
  if [ -e "$socket" ]; then echo "$socket present"; else echo "$socket absent"; fi
done
