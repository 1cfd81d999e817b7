// Table cells from API data: text only, so nothing the API returns is read as HTML.
export function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

export function when(seconds, missing = "never") {
  return seconds ? new Date(seconds * 1000).toLocaleString() : missing;
}
