// SMS segment counting in the browser, the same rule the host applies
// (host/src/services/channel_rules.rs): GSM-7 fits 160 septets in one segment or 153 per
// segment once split, extension characters take two septets and an escape pair is never split;
// one character outside GSM-7 makes the whole text UCS-2, 70 UTF-16 units in one segment or 67
// per segment, a surrogate pair never split.

const GSM_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u001bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡" +
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
const GSM_EXTENDED = new Set("^{}\\[~]|€\f");

/** Characters as the host counts them (Unicode scalar values). */
export function characters(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

function pack(units, single, split) {
  const total = units.reduce((a, b) => a + b, 0);
  if (total <= single) return 1;
  let count = 1;
  let used = 0;
  for (const u of units) {
    if (used + u > split) {
      count += 1;
      used = 0;
    }
    used += u;
  }
  return count;
}

/** `{encoding: "GSM-7"|"UCS-2", segments}` of `text` (0 segments when empty). */
export function segments(text) {
  if (text === "") return { encoding: "GSM-7", segments: 0 };
  const septets = [];
  for (const c of text) {
    if (GSM_BASIC.has(c)) septets.push(1);
    else if (GSM_EXTENDED.has(c)) septets.push(2);
    else {
      const units = [];
      for (const ch of text) units.push(ch.length);
      return { encoding: "UCS-2", segments: pack(units, 70, 67) };
    }
  }
  return { encoding: "GSM-7", segments: pack(septets, 160, 153) };
}
