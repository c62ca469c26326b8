"""What dl asks of the operating system, torch-free: writing files safely (files), processes that end
with their parent (processes), graceful stops on signals (interrupts), the machine's cores and memory
(machine), dl's cache directory (cache_dir), and the terminal and number formats (terminal, numbers)."""
