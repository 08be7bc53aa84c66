# Read by the interactive shell at start (ENV=/fn/profile.sh): a short greeting, then the prompt.
echo "fnix shell: busybox sh in a warm container. The files of this function are in /fn, /tmp is yours"
echo "until the session ends. Type 'exit' to leave."
