// The theme chosen in this browser, set before the page is first drawn: a classic script in <head> runs before the
// body is parsed, where the modules (theme.js) run only after, so a page with Dark chosen under a light system would
// flash light first. theme.js owns the choice (the switch, later changes); this only reads it.
try {
  const saved = localStorage.getItem('warbler.theme');
  if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
} catch { /* storage unavailable: the system's theme */ }
