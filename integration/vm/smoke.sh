#!/bin/sh
# The VM tier's smoke test (`cargo xtask vm-test` runs it in the VM): the
# kernel features of the kernel datapath work. Two network namespaces joined
# by a veth pair, an ip_gre tunnel between them protected by ESP in transport
# mode (XFRM states and policies for protocol 47): one direction with
# rfc4106(gcm(aes)), the other with cbc(aes) + hmac(sha256). A ping crosses
# the GRE link, and every SA's packet counter must have moved.
#
# Runs anywhere with ip_gre, esp4, xfrm_user and the crypto templates (as
# root); on the project's host kernel it fails at the first GRE or ESP step.
set -eu

A=smoke-a
B=smoke-b
ADDR_A=172.31.255.1
ADDR_B=172.31.255.2
GRE_A=10.255.255.1
GRE_B=10.255.255.2
# AES-128-GCM: 16-byte key + 4-byte salt; AES-128-CBC key; HMAC-SHA256 key.
GCM_KEY=0x0123456789abcdef0123456789abcdef01020304
CBC_KEY=0xfedcba9876543210fedcba9876543210
HMAC_KEY=0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
SPI_AB=0x1001   # A -> B, AES-GCM
SPI_BA=0x1002   # B -> A, AES-CBC + HMAC-SHA256

step() { echo "smoke: $*"; }
cleanup() {
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
cleanup

step "kernel $(uname -r)"
ip netns add $A
ip netns add $B
ip link add wan-a netns $A type veth peer name wan-b netns $B
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A addr add $ADDR_A/24 dev wan-a
ip -n $B addr add $ADDR_B/24 dev wan-b
ip -n $A link set wan-a up
ip -n $B link set wan-b up

step "ip_gre tunnels"
ip -n $A link add gre1 type gre local $ADDR_A remote $ADDR_B ttl 64
ip -n $B link add gre1 type gre local $ADDR_B remote $ADDR_A ttl 64
ip -n $A addr add $GRE_A/30 dev gre1
ip -n $B addr add $GRE_B/30 dev gre1
ip -n $A link set gre1 up
ip -n $B link set gre1 up

# The same SAs on both sides; policies mirror each other.
sas() {
    ns=$1
    ip -n "$ns" xfrm state add src $ADDR_A dst $ADDR_B proto esp spi $SPI_AB \
        reqid 1 mode transport aead 'rfc4106(gcm(aes))' $GCM_KEY 128
    ip -n "$ns" xfrm state add src $ADDR_B dst $ADDR_A proto esp spi $SPI_BA \
        reqid 2 mode transport enc 'cbc(aes)' $CBC_KEY auth-trunc 'hmac(sha256)' $HMAC_KEY 128
}
policy() {
    ns=$1 src=$2 dst=$3 dir=$4 reqid=$5
    ip -n "$ns" xfrm policy add src $src dst $dst proto gre dir "$dir" \
        tmpl src $src dst $dst proto esp reqid "$reqid" mode transport
}
step "ESP transport mode: rfc4106(gcm(aes)) A->B, cbc(aes)+hmac(sha256) B->A"
sas $A
sas $B
policy $A $ADDR_A $ADDR_B out 1
policy $A $ADDR_B $ADDR_A in 2
policy $B $ADDR_B $ADDR_A out 2
policy $B $ADDR_A $ADDR_B in 1

step "ping across GRE over ESP"
ip netns exec $A ping -c 3 -i 0.2 -W 2 $GRE_B

# Packets through an SA: `lifetime current:` is followed by
# `  <bytes>(bytes), <packets>(packets)`.
packets() {
    ip -n "$1" -s xfrm state get src "$2" dst "$3" proto esp spi "$4" |
        sed -n '/lifetime current:/{n;s/.*, *\([0-9]*\)(packets).*/\1/p;}'
}
fail=0
for ns in $A $B; do
    for sa in "$ADDR_A $ADDR_B $SPI_AB" "$ADDR_B $ADDR_A $SPI_BA"; do
        # shellcheck disable=SC2086
        n=$(packets $ns $sa)
        step "$ns: SA $sa: ${n:-?} packets"
        if [ "${n:-0}" -eq 0 ]; then fail=1; fi
    done
done
[ $fail -eq 0 ] || { step "FAILED: an SA counted no packets"; ip -n $A -s xfrm state; exit 1; }
step "ok: GRE over ESP (AES-GCM and AES-CBC+HMAC-SHA256) in the kernel"
