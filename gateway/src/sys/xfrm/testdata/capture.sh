#!/bin/bash
# Captures the XFRM requests of iproute2 that the encoding tests in
# ../tests.rs compare with, as hex of the payload after the netlink header.
# The kernel may refuse the SAs (no esp4 or no algorithm): strace shows the
# request all the same. Needs root, strace and iproute2.
set -u
cd "$(dirname "$0")"
ns=xfrmcap$$
ip netns add $ns
trap 'ip netns del $ns' EXIT
cap() {
    name=$1; shift
    strace -e trace=sendmsg -xx -s 8192 -o /tmp/$ns.strace ip -n $ns "$@" >/dev/null 2>&1
    grep -o '}, "[^"]*"' /tmp/$ns.strace | tail -1 | sed 's/^}, "//; s/"$//; s/\\x//g' > $name.hex
    rm -f /tmp/$ns.strace
}
GCM=0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324
SEL="sel src 192.0.2.1/32 dst 198.51.100.7/32 proto gre"
SA="src 192.0.2.1 dst 198.51.100.7 proto esp"
cap newsa_gcm_udp xfrm state add $SA spi 0xc0ffee01 reqid 7 mode transport replay-window 32 \
    aead 'rfc4106(gcm(aes))' $GCM 128 encap espinudp 4500 4501 0.0.0.0 $SEL
cap newsa_cbc_sha256_tunnel xfrm state add $SA spi 0x1000 reqid 9 mode tunnel replay-window 32 flag af-unspec \
    enc 'cbc(aes)' 0x000102030405060708090a0b0c0d0e0f \
    auth-trunc 'hmac(sha256)' 0x202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f 128
cap newsa_cbc_sha1 xfrm state add $SA spi 0x1003 reqid 9 mode transport replay-window 0 \
    enc 'cbc(aes)' 0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \
    auth-trunc 'hmac(sha1)' 0x2021222324252627282930313233343536373839 96 $SEL
cap newsa_esn xfrm state add $SA spi 0x1001 reqid 9 mode transport replay-window 128 flag esn \
    aead 'rfc4106(gcm(aes))' $GCM 128 $SEL
cap newsa_esn_seq_limits_udp xfrm state add $SA spi 0x1004 reqid 9 mode transport replay-window 64 flag esn \
    replay-seq 0xfffffffc replay-oseq 0xfffffffc replay-seq-hi 1 replay-oseq-hi 1 \
    aead 'rfc4106(gcm(aes))' $GCM 128 $SEL \
    limit time-soft 30 limit time-hard 60 limit byte-soft 1000 limit byte-hard 2000 \
    encap espinudp 4500 4501 0.0.0.0
cap updsa_gcm_udp xfrm state update $SA spi 0xc0ffee01 reqid 7 mode transport replay-window 32 \
    aead 'rfc4106(gcm(aes))' $GCM 128 encap espinudp 4500 4502 0.0.0.0 $SEL
cap newsa_window64 xfrm state add $SA spi 0x1002 reqid 9 mode transport replay-window 64 \
    aead 'rfc4106(gcm(aes))' $GCM 128 $SEL
cap delsa xfrm state delete dst 198.51.100.7 proto esp spi 0xc0ffee01
cap getsa xfrm state get dst 198.51.100.7 proto esp spi 0xc0ffee01
cap newpolicy_transport xfrm policy add src 192.0.2.1/32 dst 198.51.100.7/32 proto gre dir out priority 100 \
    tmpl src 192.0.2.1 dst 198.51.100.7 proto esp reqid 7 mode transport
cap newpolicy_tunnel xfrm policy add src 10.1.1.0/24 dst 10.2.0.0/16 dir fwd priority 2000 \
    tmpl src 198.51.100.7 dst 192.0.2.1 proto esp reqid 9 mode tunnel
cap newpolicy_block xfrm policy add src 10.1.1.0/24 dst 10.2.0.0/16 proto tcp dport 179 dir in priority 5 action block
cap delpolicy xfrm policy delete src 192.0.2.1/32 dst 198.51.100.7/32 proto gre dir out
cap getpolicy xfrm policy get src 10.1.1.0/24 dst 10.2.0.0/16 dir fwd
