/** Goes to a hash route, e.g. navigate("/alerts"); re-renders when already there. */
export function navigate(path: string): void {
  if (location.hash === `#${path}`) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = `#${path}`;
}
