/** The longest path a unix socket may have on Linux (sun_path is 108 bytes, its NUL included). */
export const MAX_SOCKET_PATH_BYTES = 107;
