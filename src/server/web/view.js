// Small helpers of switchboard's browser client for building and updating the page.
// Everything a person or the server wrote goes in as text, never as markup.

export const $ = (id) => document.getElementById(id);

export function setStatus(text) {
  $('status').textContent = text;
}

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Keeps a list to its last `kept` items. */
export function trim(list, kept) {
  while (list.children.length > kept) list.firstElementChild.remove();
}

export function clock(sentAt) {
  const when = sentAt ? new Date(sentAt) : new Date();
  return when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
