# shellcheck shell=bash
# Internal identity keys: every process signs its gRPC calls with its own Ed25519 key and trusts
# the public keys listed in one JSON file (services/platform/src/grpc/identity.rs). Sourced by
# scripts/lib.sh.

# Makes, in <dir>, <name>.pem for each process (kept when present, so a restarted stack keeps its
# keys) and trusted-keys.json binding each public key to its process; prints nothing. Use with
# identity_env.
IDENTITY_PROCESSES=(gateway user stock-data prediction analytics notification)
make_identity_keys() { # dir
    local dir="$1" name x entries=()
    command -v openssl >/dev/null || die "openssl not found (it makes the internal identity keys): apt-get install openssl"
    mkdir -p "$dir"
    chmod 700 "$dir"
    for name in "${IDENTITY_PROCESSES[@]}"; do
        if [[ ! -s $dir/$name.pem ]]; then
            (umask 077 && openssl genpkey -algorithm ed25519 -out "$dir/$name.pem.partial") ||
                die "openssl could not make an Ed25519 key"
            mv "$dir/$name.pem.partial" "$dir/$name.pem"
        fi
        # The raw public key is the last 32 bytes of the DER SubjectPublicKeyInfo; JWK x is its
        # base64url without padding.
        x="$(openssl pkey -in "$dir/$name.pem" -pubout -outform DER | tail -c 32 | base64 | tr '+/' '-_' | tr -d '=\n')"
        entries+=("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"iss\":\"mirai-$name\",\"x\":\"$x\"}")
    done
    local IFS=,
    printf '{"keys":[%s]}\n' "${entries[*]}" >"$dir/trusted-keys.json.partial"
    mv "$dir/trusted-keys.json.partial" "$dir/trusted-keys.json"
}

# The two variables that give process <name> (gateway, user, ...) its key and the trust set
# made by make_identity_keys in <dir>, as NAME=value words for env.
identity_env() { # dir name
    printf '%s\n' "MIRAI_INTERNAL_SIGNING_KEY=$1/$2.pem" "MIRAI_INTERNAL_TRUSTED_KEYS=$1/trusted-keys.json"
}
