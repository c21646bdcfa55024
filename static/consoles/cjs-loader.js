// A small CommonJS loader for the browser. noVNC's npm package ships its
// library as CommonJS (lib/*.js), which browsers cannot import; rather than
// copy or bundle third-party code into the repository, the modules are
// fetched from node_modules (served as /static/vendor/), their require()
// graph is followed, and they are evaluated in dependency order on demand.
(function () {
  "use strict";
  const sources = new Map();
  const cache = new Map();

  function resolve(from, spec) {
    return new URL(spec, from).href;
  }

  async function load(url) {
    if (sources.has(url)) return;
    sources.set(url, null);
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error("cannot load " + url + ": " + response.status);
    const text = await response.text();
    sources.set(url, text);
    const deps = [...text.matchAll(/require\("([^"]+)"\)/g)].map((m) => resolve(url, m[1]));
    await Promise.all(deps.map(load));
  }

  function requireUrl(url) {
    if (cache.has(url)) return cache.get(url).exports;
    const module = { exports: {} };
    cache.set(url, module);
    const body = sources.get(url);
    const fn = new Function("exports", "require", "module", body + "\n//# sourceURL=" + url);
    fn(module.exports, (spec) => requireUrl(resolve(url, spec)), module);
    return module.exports;
  }

  window.cjsImport = async function (url) {
    const absolute = new URL(url, document.baseURI).href;
    await load(absolute);
    return requireUrl(absolute);
  };
})();
