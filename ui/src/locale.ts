// Under a POSIX locale (LANG=C, as in many sandboxes and services) WebKit reports the language
// "C", which is not a BCP 47 tag: `Intl.NumberFormat("C")` throws, and uPlot formats numbers
// with `navigator.language` when it loads. Fall back to a tag every engine knows. This module
// is imported first so it runs before any module that reads the language.
function valid(tag: string): boolean {
  try {
    return Intl.NumberFormat.supportedLocalesOf([tag]).length > 0;
  } catch {
    return false;
  }
}

if (!valid(navigator.language)) {
  Object.defineProperty(navigator, "language", { value: "en-US", configurable: true });
}
