// The API reference page (/api/docs): Swagger UI (npm swagger-ui-dist, built into the binary)
// over the gateway's own OpenAPI document. A file of its own: the pages allow no inline script.
"use strict";

(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,
    // Nothing leaves this site: no validator badge from elsewhere.
    validatorUrl: null,
    displayOperationId: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 1,
    tryItOutEnabled: false,
  });
})();
