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

// A row's header cell: a link that keeps its address (open in a new tab, copy) but, clicked,
// lets the page show the row in place.
export function rowLink(row, text, href, onSelect) {
  const th = document.createElement("th");
  th.scope = "row";
  const link = document.createElement("a");
  link.href = href;
  link.textContent = text;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    onSelect();
  });
  th.append(link);
  row.append(th);
  return th;
}

export function fixed(value, digits = 2) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

// One cell across the whole table, saying why it is empty.
export function emptyRow(table, text) {
  const body = document.querySelector(`${table} tbody`);
  cell(body.insertRow(), text).colSpan = document.querySelectorAll(`${table} thead th`).length;
}
