// Checks a receipt in the browser: the checkpoint's Ed25519 signature (WebCrypto) by the
// log key the reader chose to trust, and the RFC 9162 inclusion proof of the receipt's leaf
// hash up to the checkpoint's root. The server only supplies the proof's hashes, which it
// cannot forge for another leaf or root; the verdict is computed here.
"use strict";
window.certhubReceipt = (function () {
  const utf8 = new TextEncoder();

  function fromHex(text, what) {
    if (typeof text !== "string" || !/^([0-9a-f]{2})+$/.test(text)) throw new Error(`${what} is not lowercase hex`);
    return Uint8Array.from(text.match(/../g), (h) => parseInt(h, 16));
  }
  function fromBase64(text, what) {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new Error(`${what} is not base64`);
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  function equal(a, b) {
    return a.length === b.length && a.every((v, i) => v === b[i]);
  }
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

  // RFC 9162 section 2.1.3.2, with BigInt so indices past 2^53 stay exact.
  async function rootFromProof(leafHash, index, size, proof) {
    let fn = BigInt(index), sn = BigInt(size) - 1n, r = leafHash;
    for (const p of proof) {
      if (sn === 0n) throw new Error("the proof has more hashes than the tree needs");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("the proof has fewer hashes than the tree needs");
    return r;
  }

  // C2SP signed-note verifier key: <name>+<hex key hash>+<base64(0x01 || Ed25519 key)>.
  async function parseVkey(vkey) {
    // The name and the hash hold no "+"; the base64 key may.
    const first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
    if (first < 1 || second < 0) throw new Error("the log key is not name+hash+key");
    const name = vkey.slice(0, first), hashHex = vkey.slice(first + 1, second), keyB64 = vkey.slice(second + 1);
    const raw = fromBase64(keyB64, "the log key");
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("the log key is not an Ed25519 key");
    const keyHash = (await sha256(concat(utf8.encode(name), Uint8Array.of(10), raw))).slice(0, 4);
    if (!equal(keyHash, fromHex(hashHex, "the log key hash"))) throw new Error("the log key's hash does not match its key");
    const key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    return { name, keyHash, key };
  }

  function parseNote(note) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0) throw new Error("the checkpoint has no signatures");
    const text = note.slice(0, split + 1);
    const lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) throw new Error("the checkpoint lacks origin, size or root");
    if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Error("the checkpoint size is not a number");
    const root = fromBase64(lines[2], "the checkpoint root");
    if (root.length !== 32) throw new Error("the checkpoint root is not 32 bytes");
    const signatures = note.slice(split + 2).split("\n").filter((l) => l).map((line) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m) throw new Error("a signature line of the checkpoint is malformed");
      return { name: m[1], raw: fromBase64(m[2], "a checkpoint signature") };
    });
    return { text, origin: lines[0], size: lines[1], root, signatures };
  }

  async function check(receiptText, vkey, getProof) {
    try {
      let receipt;
      try { receipt = JSON.parse(receiptText); } catch (e) { throw new Error("the receipt is not JSON"); }
      const index = receipt.index;
      if (!Number.isSafeInteger(index) || index < 0) throw new Error("the receipt's index is not a whole number");
      const leafHash = fromHex(receipt.leaf_hash, "the receipt's leaf hash");
      if (leafHash.length !== 32) throw new Error("the receipt's leaf hash is not 32 bytes");
      const note = parseNote(String(receipt.checkpoint || ""));
      if (receipt.log !== undefined && receipt.log !== note.origin) throw new Error("the receipt names another log than its checkpoint");
      const trusted = await parseVkey(vkey);
      const line = note.signatures.find((s) => s.name === trusted.name && equal(s.raw.slice(0, 4), trusted.keyHash));
      if (!line) throw new Error("the checkpoint carries no signature by the trusted log key");
      if (line.raw.length !== 68) throw new Error("the log's signature is not an Ed25519 signature");
      const signed = await crypto.subtle.verify({ name: "Ed25519" }, trusted.key, line.raw.slice(4), utf8.encode(note.text));
      if (!signed) throw new Error("the checkpoint's signature does not verify: it was altered or not signed by this log");
      if (BigInt(index) >= BigInt(note.size)) throw new Error("the checkpoint does not cover the receipt's index");
      const proof = (await getProof(index, note.size)).map((h) => fromHex(h, "a proof hash"));
      const root = await rootFromProof(leafHash, index, note.size, proof);
      if (!equal(root, note.root)) throw new Error("the entry is not in the signed log: the inclusion proof leads to another root");
      return { ok: true, index, size: note.size, signer: trusted.name };
    } catch (error) {
      return { ok: false, reason: error.message };
    }
  }

  return { check, rootFromProof, parseVkey, parseNote };
})();
