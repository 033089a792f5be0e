#!/usr/bin/env bash
# Regenerates the TLS test fixtures (a CA, a server certificate for localhost/127.0.0.1 and a
# client certificate). Test-only keys: never use them for anything else.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days $days \
  -subj "/CN=mmsearch test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $who.key -out $who.csr -subj "/CN=mmsearch test $who"
  if [ $who = server ]; then ext="subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"; else ext="extendedKeyUsage=clientAuth"; fi
  printf "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n$ext\n" > $who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days $days -extfile $who.ext
  rm $who.csr $who.ext
done
rm -f ca.srl
