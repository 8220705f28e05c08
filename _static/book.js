// pydata-sphinx-theme starts a first-time visitor in mode "" and logs "Got invalid theme mode"
// to the console; "auto" is what it falls back on anyway. This runs before the theme's deferred
// script (tests/test_browser.py fails on any console error).
if (!document.documentElement.dataset.mode) {
  document.documentElement.dataset.mode = "auto";
}
