// A stand-in for a bundler's output: renders the route, what the API says, and how this
// script came over the wire (a precompressed sibling shows fewer bytes encoded than decoded).
const app = document.getElementById("app");
const script = document.currentScript.src;
fetch("/api/items")
  .then((response) => response.json())
  .then((data) => {
    const [timing] = performance.getEntriesByName(script);
    app.textContent = `route ${location.pathname}: ${data.items.length} items from the API`;
    app.dataset.scriptBytes = `${timing.encodedBodySize} encoded, ${timing.decodedBodySize} decoded`;
    app.dataset.ready = "yes";
  });
