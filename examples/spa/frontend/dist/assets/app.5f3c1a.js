// A stand-in for a bundler's output: renders the route and what the API says.
const app = document.getElementById("app");
fetch("/api/items")
  .then((response) => response.json())
  .then((data) => {
    app.textContent = `route ${location.pathname}: ${data.items.length} items from the API`;
    app.dataset.ready = "yes";
  });
